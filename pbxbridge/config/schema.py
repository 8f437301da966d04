"""The routing rules file (YAML) as pydantic models.

Every model forbids unknown keys and validates strictly: a YAML value of the
wrong type is an error, never silently coerced. That matters because YAML 1.1
reads ``17:30`` as the integer 1050, ``0440773`` as an octal number and ``no``
as ``False``; times, dates and phone numbers must therefore be strings (the
loader keeps unquoted dates as strings for convenience and turns the other
traps into errors that show the original text).

Cross-references (a tenant's calendar and queue, the 115 area codes), number
parsing, overlapping intervals and duplicate DIDs are checked afterwards in
:mod:`pbxbridge.config.compile`, which knows the key paths and reports every
problem at once.

``pbxbridge schema`` prints the JSON Schema of :class:`RulesFile` for editors.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Text = Annotated[str, Field(max_length=500)]
"""A short free text."""

Sound = Annotated[
    str,
    Field(
        max_length=200,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_/.-]*$",
        description="An Asterisk sound file name without extension, e.g. custom/wardenburg.",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class HolidaysConfig(_Strict):
    """Public holidays that close a calendar (via the ``holidays`` package)."""

    country: str = Field(description="ISO 3166 country code, e.g. DE.", min_length=2)
    subdivision: str | None = Field(
        default=None, description="State/subdivision code, e.g. NI for Lower Saxony."
    )


class CalendarConfig(_Strict):
    """Opening hours of one calendar, in the rules' time zone."""

    ics: str | None = Field(
        default=None,
        max_length=1000,
        description=(
            "An iCalendar file (.ics) whose events are closures, relative to this "
            "file's folder; read on every (re)load, a change to it reloads the rules. "
            "Its closures count as dated closed entries."
        ),
    )

    holidays: HolidaysConfig | None = Field(
        default=None, description="Public holidays closing the whole day."
    )
    hours: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "Weekly hours: day spec (mon-fri, sat, mon,wed, daily) to a list of "
            "half-open intervals HH:MM-HH:MM (07:00 open, 18:00 closed). Days not "
            "listed are closed."
        ),
    )
    closed: list[str] = Field(
        default_factory=list,
        description=(
            "Extra closed dates: YYYY-MM-DD or an inclusive range YYYY-MM-DD..YYYY-MM-DD; "
            "yearly: MM-DD or MM-DD..MM-DD (12-31..01-01 runs over the year end). "
            "A dated entry wins over a yearly one on the same day."
        ),
    )
    open: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "Special openings: date (YYYY-MM-DD) or yearly date or range (MM-DD, "
            "MM-DD..MM-DD) to intervals; replaces weekly hours, holidays and closed "
            "dates on that date (e.g. an election Sunday). A dated entry wins over "
            "a yearly one on the same day."
        ),
    )


class QueueConfig(_Strict):
    """A queue in Asterisk (app_queue) that calls are handed to."""

    context: str = Field(
        default="pbxbridge-queue",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Dialplan context that runs Queue() (see dialplans/).",
    )
    queue: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="app_queue queue name; defaults to the key.",
    )
    timeout: int | None = Field(
        default=None, ge=1, le=86400, description="Seconds before Queue() gives up."
    )


class OpenConfig(_Strict):
    """What happens to a tenant's calls during opening hours."""

    queue: str = Field(description="Key of a queue under queues.")
    priority: int = Field(default=0, ge=0, le=100, description="QUEUE_PRIO; higher first.")
    whisper: Sound | None = Field(
        default=None, description="Sound played to the agent before bridging."
    )
    callerid_prefix: str = Field(
        default="",
        max_length=12,
        pattern=r"^[A-Za-z0-9 _-]*$",
        description="Prefix of the caller-ID name on agents' phones, e.g. WAR.",
    )


class ClosedConfig(_Strict):
    """What happens to a tenant's calls outside opening hours."""

    announce: Sound | None = Field(default=None, description="Announcement played first.")
    then: Literal["hangup", "voicemail", "forward", "queue"] = Field(
        default="hangup", description="What follows the announcement."
    )
    mailbox: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]+(@[A-Za-z0-9_-]+)?$",
        description="Voicemail box (then: voicemail), e.g. 1000@wardenburg.",
    )
    number: str | None = Field(default=None, description="Number to forward to (then: forward).")
    queue: str | None = Field(default=None, description="Key of a queue (then: queue).")

    @model_validator(mode="after")
    def _target_matches_then(self) -> ClosedConfig:
        needed = {"voicemail": "mailbox", "forward": "number", "queue": "queue"}.get(self.then)
        for key in ("mailbox", "number", "queue"):
            given = getattr(self, key) is not None
            if key == needed and not given:
                raise ValueError(f"then: {self.then} needs {key}")
            if key != needed and given:
                raise ValueError(f"{key} is only used with then: {_then_for(key)}")
        return self


def _then_for(key: str) -> str:
    return {"mailbox": "voicemail", "number": "forward", "queue": "queue"}[key]


class ScreenPopConfig(_Strict):
    """Knowledge-base link shown to the agent."""

    url: str = Field(
        max_length=2000,
        description=(
            "URL template; placeholders {caller} (E.164, empty when withheld), "
            "{tenant}, {did}, {caller_name}, {via_115}; values are URL-encoded."
        ),
    )


class CallbackConfig(_Strict):
    """Callback promise for calls that need one."""

    working_days: int = Field(
        default=1, ge=1, le=10, description="Due at the end of the n-th next working day."
    )


class VirtualHoldSoundsConfig(_Strict):
    """The prompts of a virtual hold; each one left out keeps its default."""

    offer: Sound | None = Field(
        default=None, description="The offer (default pbxbridge/vhold-offer): press the digit."
    )
    read_back: Sound | None = Field(
        default=None, description="Before the caller's number is read back as digits."
    )
    confirm_or_enter: Sound | None = Field(
        default=None, description="Press the digit to confirm, or type another number and #."
    )
    enter_number: Sound | None = Field(
        default=None, description="Type your number with area code, ending with #."
    )
    invalid_number: Sound | None = Field(
        default=None, description="This number cannot be called back."
    )
    premium_number: Sound | None = Field(
        default=None, description="Premium-rate, service and emergency numbers are not called."
    )
    international_number: Sound | None = Field(
        default=None, description="Only German numbers are called back."
    )
    confirmed: Sound | None = Field(default=None, description="Thank you, you may hang up.")
    may_call_tomorrow: Sound | None = Field(
        default=None,
        description="Played with the offer: if we close first, we call back the next working day.",
    )
    agent_whisper: Sound | None = Field(
        default=None,
        description=(
            "Played to the agent who takes a callback, before the tenant's whisper "
            "(default pbxbridge/vhold-callback-for: Rückruf für)."
        ),
    )


class VirtualHoldConfig(_Strict):
    """Virtual hold: a waiting caller may take a callback and keep their place in the queue."""

    enabled: bool = Field(default=False, description="Offer callbacks (off unless true).")
    offer_when_estimate_over: int | None = Field(
        default=None,
        ge=0,
        le=86400,
        description=(
            "Offer when the estimated wait exceeds this many seconds. With neither this "
            "nor offer_after_waiting: 120."
        ),
    )
    offer_after_waiting: int | None = Field(
        default=None,
        ge=0,
        le=86400,
        description="Offer once the caller has waited this many seconds.",
    )
    offer_when: Literal["any", "all"] = Field(
        default="any",
        description="With both thresholds: offer when either (any) or both (all) hold.",
    )
    repeat_every: int = Field(
        default=60, ge=0, le=3600, description="Seconds until the offer is repeated; 0: once."
    )
    digit: str = Field(
        default="1", pattern=r"^[0-9*]$", description='The digit that accepts (quoted, "1").'
    )
    sounds: VirtualHoldSoundsConfig = Field(default_factory=VirtualHoldSoundsConfig)
    retry_after: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="Seconds after a failed callback until the next try.",
    )
    max_tries: int = Field(default=3, ge=1, le=10, description="Calls to the citizen in all.")
    answer_timeout: int = Field(
        default=30, ge=5, le=120, description="Seconds the citizen's phone rings per try."
    )
    entry_attempts: int = Field(
        default=2, ge=1, le=5, description="Number entries before the caller goes back to waiting."
    )
    allow_international: bool = Field(
        default=False, description="Call back numbers outside Germany too."
    )
    repeat_caller_priority: int = Field(
        default=0,
        ge=0,
        le=100,
        description=(
            "Added to the queue priority of a call whose number has an open callback "
            "ticket or a pending virtual hold, after the caller joined the queue, via "
            "QueueChangePriorityCaller (the caller moves ahead of lower priorities at "
            "once); 0: such calls only get the 'offener Rückruf' note."
        ),
    )
    outbound_context: str = Field(
        default="pbxbridge-forward",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Dialplan context that dials the citizen through the outbound trunk.",
    )


class TenantConfig(_Strict):
    """A public authority whose calls the service centre answers."""

    name: str = Field(min_length=1, max_length=80, description="Display name.")
    greeting: Text = Field(default="", description="What the agent says on pickup.")
    dids: list[str] = Field(
        default_factory=list,
        description=(
            "Numbers of the tenant: exact numbers (+49 4407 73-0) or blocks ending "
            "in * (+49 4407 73*); the most specific match wins."
        ),
    )
    calendar: str = Field(description="Key of a calendar under calendars.")
    places: list[Annotated[str, Field(min_length=2, max_length=80)]] = Field(
        default_factory=list,
        description=(
            "Places the tenant covers, as the phonenumbers geocoder names local "
            "networks (Jever, Varel); pbxbridge check warns about a 115 area code "
            "mapped to the tenant whose place is none of them. Default: the words "
            "of name (Gemeinde Wardenburg: Wardenburg)."
        ),
    )
    open: OpenConfig
    closed: ClosedConfig = Field(default_factory=ClosedConfig)
    screen_pop: ScreenPopConfig | None = None
    callback: CallbackConfig = Field(default_factory=CallbackConfig)
    virtual_hold: VirtualHoldConfig | None = Field(
        default=None, description="Callback instead of waiting (off without this block)."
    )


class MenuConfig(_Strict):
    """A DTMF menu for 115 callers who cannot be placed by area code."""

    prompt: Sound = Field(description="Sound asking the caller to choose.")
    options: dict[str, str] = Field(description='Digit (quoted, e.g. "1") to tenant key.')
    default: str = Field(description="Tenant key when nothing or something else is pressed.")
    timeout: float = Field(default=5.0, gt=0, le=30, description="Seconds to wait for a digit.")


class OtherwiseConfig(_Strict):
    """Where 115 callers go whose area code is not mapped (or who withheld it)."""

    tenant: str | None = Field(default=None, description="Route them as this tenant, or")
    menu: MenuConfig | None = Field(default=None, description="ask them with a menu.")

    @model_validator(mode="after")
    def _exactly_one(self) -> OtherwiseConfig:
        if (self.tenant is None) == (self.menu is None):
            raise ValueError("give exactly one of tenant or menu")
        return self


class Service115Config(_Strict):
    """The national authority number 115."""

    dids: list[str] = Field(min_length=1, description="The numbers 115 calls arrive on.")
    by_area_code: dict[str, str] = Field(
        default_factory=dict,
        description="Caller area code (+49 4407 or 04407) to tenant key; longest prefix wins.",
    )
    otherwise: OtherwiseConfig


class RejectConfig(_Strict):
    """Refuse a call."""

    announce: Sound | None = Field(default=None, description="Announcement before hangup.")


class UnknownDidConfig(_Strict):
    """What happens to numbers no tenant claims."""

    tenant: str | None = Field(default=None, description="Route them as this tenant, or")
    reject: RejectConfig | None = Field(default=None, description="refuse them.")

    @model_validator(mode="after")
    def _exactly_one(self) -> UnknownDidConfig:
        if (self.tenant is None) == (self.reject is None):
            raise ValueError("give exactly one of tenant or reject")
        return self


class StateConfig(_Strict):
    """Where pbxbridge keeps its state (manual overrides)."""

    path: str | None = Field(
        default=None,
        description=(
            "SQLite file, relative to this file's folder. Default: "
            "$STATE_DIRECTORY/pbxbridge.sqlite under systemd, else "
            "/var/lib/pbxbridge/pbxbridge.sqlite when that folder exists, else "
            "var/pbxbridge.sqlite beside this file."
        ),
    )


class RulesFile(_Strict):
    """The routing rules of a pbxbridge service centre."""

    version: Literal[1] = Field(default=1, description="Format version of this file.")
    timezone: str = Field(description="IANA time zone of all calendars, e.g. Europe/Berlin.")
    region: str = Field(
        default="DE", description="Default region for numbers without country code."
    )
    calendars: dict[str, CalendarConfig] = Field(min_length=1)
    queues: dict[str, QueueConfig] = Field(min_length=1)
    tenants: dict[str, TenantConfig] = Field(min_length=1)
    service_115: Service115Config | None = None
    unknown_did: UnknownDidConfig
    state: StateConfig = Field(default_factory=StateConfig)
