"""Labels of the agent page: German (default) and English.

Every text the page shows lives here, so both languages stay complete (a unit
test checks that they have the same keys and placeholders). Server-side texts
are escaped when rendered; the script gets the ``js_*`` labels as JSON data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

LANGUAGES: Final = ("de", "en")
DEFAULT_LANGUAGE: Final = "de"

LABELS: Final[dict[str, dict[str, str]]] = {
    "de": {
        "title": "Arbeitsplatz",
        "lang_other": "English",
        "sign_in": "Anmelden",
        "sign_in_title": "Anmeldung Arbeitsplatz",
        "sign_out": "Abmelden",
        "agent_id": "Agenten-ID",
        "password": "Kennwort",
        "login_failed": "Anmeldung fehlgeschlagen: Agenten-ID oder Kennwort ist falsch.",
        "login_locked": ("Zu viele Fehlversuche. Bitte in {minutes} Minute(n) erneut versuchen."),
        "login_unavailable": (
            "Anmeldung derzeit nicht möglich: die Agentenliste ist nicht lesbar. "
            "Bitte die Administration informieren."
        ),
        "login_missing": "Bitte Agenten-ID und Kennwort eingeben.",
        "login_busy": (
            "Gerade melden sich zu viele gleichzeitig an. Bitte in einigen Sekunden "
            "erneut versuchen."
        ),
        "page_disabled": (
            "Der Arbeitsplatz ist wegen eines Konfigurationsfehlers nicht verfügbar "
            "(siehe Protokoll und /healthz). Bitte die Administration informieren."
        ),
        "csrf_failed": (
            "Sicherheitsprüfung fehlgeschlagen (CSRF-Token fehlt oder ist ungültig). "
            "Bitte die Seite neu laden und erneut versuchen. Nichts geändert."
        ),
        "signed_out": "Sie sind abgemeldet.",
        "not_signed_in": "Nicht angemeldet oder Sitzung abgelaufen – bitte neu anmelden.",
        "nav_desk": "Anrufe",
        "nav_callbacks": "Rückrufe",
        "signed_in_as": "Angemeldet als",
        "journal_missing": (
            "Abschluss und Rückrufe nicht verfügbar: kein Anrufjournal konfiguriert. "
            "Die Anrufanzeige funktioniert trotzdem."
        ),
        "callbacks_title": "Rückrufe",
        "all_tenants": "Alle",
        "overdue": "Überfällig",
        "due_today": "Heute fällig",
        "open_later": "Offen",
        "col_due": "Fällig bis",
        "col_tenant": "Behörde",
        "col_number": "Rückrufnummer",
        "col_note": "Notiz",
        "col_recorded": "Angelegt",
        "col_agent": "Von",
        "mark_done": "Erledigt",
        "done_ok": "Rückruf als erledigt markiert.",
        "none_open": "Keine offenen Rückrufe.",
        "team_counts": "Team {tenant}: {open} offen, {today} heute fällig, {overdue} überfällig",
        "err_callback_unknown": ("Rückruf nicht gefunden oder bereits erledigt. Nichts geändert."),
        "err_callback_foreign": (
            "Dieser Rückruf gehört einem anderen Agenten – nur eigene Rückrufe können als "
            "erledigt markiert werden. Nichts geändert."
        ),
        "err_tenant_unknown": "Unbekannte Behörde.",
        "err_journal_down": (
            "Anrufjournal nicht erreichbar – bitte später erneut versuchen. Nichts gespeichert."
        ),
        "err_too_large": "Anfrage zu groß. Nichts gespeichert.",
        "err_note_long": (
            "Notiz zu lang: höchstens {max} Zeichen erlaubt ({count} eingegeben). "
            "Nichts gespeichert."
        ),
        "err_number_missing": "Rückrufnummer fehlt. Nichts gespeichert.",
        "err_number_invalid": "Rückrufnummer ungültig. Nichts gespeichert.",
        "err_unknown_call": (
            "Anruf nicht gefunden: nur eigene angenommene Anrufe können abgeschlossen "
            "werden. Nichts gespeichert."
        ),
        "err_disposition": "Unbekannter Abschluss. Nichts gespeichert.",
        "err_not_journalled": (
            "Der Anruf ist noch nicht im Anrufjournal. Bitte in einigen Sekunden erneut speichern."
        ),
        "saved_resolved": "Gespeichert: erledigt im Erstkontakt.",
        "saved_callback": "Rückruf angelegt – fällig bis {due}.",
        "js_idle": "Keine Anrufe. Die Anzeige erscheint, sobald Ihr Telefon klingelt.",
        "js_live": "Live verbunden",
        "js_reconnecting": "Verbindung unterbrochen – wird wiederhergestellt …",
        "js_signed_out": "Sitzung beendet – bitte neu anmelden.",
        "js_ringing": "Es klingelt",
        "js_answered": "Im Gespräch",
        "js_wrapup": "Gespräch beendet – bitte abschließen",
        "js_greeting": "Begrüßung",
        "js_caller": "Anrufer",
        "js_withheld": "unterdrückt",
        "js_invalid_number": "ungültige Nummer",
        "js_waited": "Wartezeit",
        "js_repeat": "Anrufe in 7 Tagen",
        "js_repeat_unknown": "unbekannt",
        "js_via115": "115",
        "js_via115_title": "Anruf über die Behördennummer 115",
        "js_callback_leg": "Rückruf",
        "js_callback_leg_title": "Rückruf für {tenant}: {number}, angefordert vor {minutes} min",
        "js_open_callback": "Offener Rückruf",
        "js_kb": "Wissensdatenbank öffnen",
        "js_did": "Gewählt",
        "js_queue": "Warteschlange",
        "js_resolved": "Erledigt im Erstkontakt",
        "js_callback": "Rückruf nötig",
        "js_note": "Notiz (max. 500 Zeichen)",
        "js_callback_number": "Rückrufnummer (bei Rückruf)",
        "js_saving": "Wird gespeichert …",
        "js_recent": "Zuletzt abgeschlossen",
        "js_error": "Fehler",
        "sv_title": "Leitstand",
        "sv_wall_title": "Wandanzeige",
        "sv_nav": "Leitstand",
        "sv_forbidden": (
            "Kein Zugriff: der Leitstand ist nur für Konten mit der Rolle Leitung "
            "(supervisor) freigegeben."
        ),
        "sv_target": "Ziel: {target} % der Anrufe in {threshold} s angenommen",
        "sv_shared": "Alle (gemeinsame Warteschlange)",
        "sv_queues": "Warteschlangen heute",
        "sv_waiting": "Wartend",
        "sv_longest": "Längste Wartezeit",
        "sv_offered": "Angeboten",
        "sv_answered": "Angenommen",
        "sv_abandoned": "Aufgelegt",
        "sv_sl_day_answered": "SL heute (angenommen)",
        "sv_sl_day_offered": "SL heute (angeboten)",
        "sv_sl_15_answered": "SL 15 min (angenommen)",
        "sv_sl_15_offered": "SL 15 min (angeboten)",
        "sv_cb_today": "Rückrufe heute fällig",
        "sv_cb_overdue": "Rückrufe überfällig",
        "sv_virtual_holds": "Virtuelle Warteplätze",
        "sv_agents_ready": "Agenten angemeldet",
        "sv_agents_needed": "Agenten angemeldet / benötigt (Prognose)",
        "sv_agents": "Agenten",
        "sv_no_agents": "Keine Warteschlangenmitglieder bekannt.",
        "sv_state_free": "frei",
        "sv_state_ringing": "klingelt",
        "sv_state_talking": "im Gespräch",
        "sv_state_wrapup": "Nachbearbeitung",
        "sv_state_paused": "Pause",
        "sv_state_unavailable": "nicht erreichbar",
        "sv_charts": "Verlauf heute (halbstündlich)",
        "sv_chart_sl": "Servicelevel (angeboten) je halbe Stunde, Ziel {target} %",
        "sv_chart_arrivals": "Anrufe je halbe Stunde (Balken) und Prognose (Linie)",
        "sv_chart_arrivals_only": "Anrufe je halbe Stunde (keine Prognose verfügbar)",
        "sv_legend_ok": "Ziel erreicht",
        "sv_legend_warn": "bis {points} Punkte darunter",
        "sv_legend_bad": "deutlich verfehlt",
        "sv_as_of": "Stand {time}",
        "js_sv_live": "Live",
        "js_sv_reconnecting": "Verbindung unterbrochen – wird wiederhergestellt …",
    },
    "en": {
        "title": "Agent desk",
        "lang_other": "Deutsch",
        "sign_in": "Sign in",
        "sign_in_title": "Agent desk sign-in",
        "sign_out": "Sign out",
        "agent_id": "Agent id",
        "password": "Password",
        "login_failed": "Sign-in failed: wrong agent id or password.",
        "login_locked": "Too many failed attempts. Please try again in {minutes} minute(s).",
        "login_unavailable": (
            "Sign-in is not possible right now: the agents file cannot be read. "
            "Please tell the administrator."
        ),
        "login_missing": "Please enter your agent id and password.",
        "login_busy": "Too many sign-ins at once. Please try again in a few seconds.",
        "page_disabled": (
            "The agent desk is not available because of a configuration error (see the "
            "log and /healthz). Please tell the administrator."
        ),
        "csrf_failed": (
            "Security check failed (CSRF token missing or invalid). Please reload the "
            "page and try again. Nothing was changed."
        ),
        "signed_out": "You have signed out.",
        "not_signed_in": "Not signed in or session expired – please sign in again.",
        "nav_desk": "Calls",
        "nav_callbacks": "Callbacks",
        "signed_in_as": "Signed in as",
        "journal_missing": (
            "Wrap-up and callbacks unavailable: no call journal is configured. "
            "Screen pops work nonetheless."
        ),
        "callbacks_title": "Callbacks",
        "all_tenants": "All",
        "overdue": "Overdue",
        "due_today": "Due today",
        "open_later": "Open",
        "col_due": "Due by",
        "col_tenant": "Authority",
        "col_number": "Callback number",
        "col_note": "Note",
        "col_recorded": "Recorded",
        "col_agent": "By",
        "mark_done": "Done",
        "done_ok": "Callback marked as done.",
        "none_open": "No open callbacks.",
        "team_counts": "Team {tenant}: {open} open, {today} due today, {overdue} overdue",
        "err_callback_unknown": "Callback not found or already done. Nothing was changed.",
        "err_callback_foreign": (
            "This callback belongs to another agent – you can only mark your own "
            "callbacks as done. Nothing was changed."
        ),
        "err_tenant_unknown": "Unknown authority.",
        "err_journal_down": (
            "The call journal cannot be reached – please try again later. Nothing was saved."
        ),
        "err_too_large": "Request too large. Nothing was saved.",
        "err_note_long": (
            "Note too long: at most {max} characters allowed ({count} entered). Nothing was saved."
        ),
        "err_number_missing": "Callback number missing. Nothing was saved.",
        "err_number_invalid": "Invalid callback number. Nothing was saved.",
        "err_unknown_call": (
            "Call not found: you can only wrap up calls you answered yourself. Nothing was saved."
        ),
        "err_disposition": "Unknown wrap-up. Nothing was saved.",
        "err_not_journalled": (
            "The call is not in the call journal yet. Please save again in a few seconds."
        ),
        "saved_resolved": "Saved: resolved at first contact.",
        "saved_callback": "Callback recorded – due by {due}.",
        "js_idle": "No calls. The screen pop appears as soon as your phone rings.",
        "js_live": "Live",
        "js_reconnecting": "Connection lost – reconnecting …",
        "js_signed_out": "Session ended – please sign in again.",
        "js_ringing": "Ringing",
        "js_answered": "On the call",
        "js_wrapup": "Call ended – please wrap up",
        "js_greeting": "Greeting",
        "js_caller": "Caller",
        "js_withheld": "withheld",
        "js_invalid_number": "invalid number",
        "js_waited": "Waited",
        "js_repeat": "Calls in 7 days",
        "js_repeat_unknown": "unknown",
        "js_via115": "115",
        "js_via115_title": "Call via the authority number 115",
        "js_callback_leg": "Callback",
        "js_callback_leg_title": "Callback for {tenant}: {number}, requested {minutes} min ago",
        "js_open_callback": "Open callback",
        "js_kb": "Open knowledge base",
        "js_did": "Dialled",
        "js_queue": "Queue",
        "js_resolved": "Resolved at first contact",
        "js_callback": "Callback needed",
        "js_note": "Note (max. 500 characters)",
        "js_callback_number": "Callback number (for a callback)",
        "js_saving": "Saving …",
        "js_recent": "Recently wrapped up",
        "js_error": "Error",
        "sv_title": "Supervisor",
        "sv_wall_title": "Wallboard",
        "sv_nav": "Supervisor",
        "sv_forbidden": (
            "Access denied: the supervisor page is only for accounts with the supervisor role."
        ),
        "sv_target": "Target: {target} % of calls answered within {threshold} s",
        "sv_shared": "All (shared queue)",
        "sv_queues": "Queues today",
        "sv_waiting": "Waiting",
        "sv_longest": "Longest wait",
        "sv_offered": "Offered",
        "sv_answered": "Answered",
        "sv_abandoned": "Abandoned",
        "sv_sl_day_answered": "SL today (of answered)",
        "sv_sl_day_offered": "SL today (of offered)",
        "sv_sl_15_answered": "SL 15 min (of answered)",
        "sv_sl_15_offered": "SL 15 min (of offered)",
        "sv_cb_today": "Callbacks due today",
        "sv_cb_overdue": "Callbacks overdue",
        "sv_virtual_holds": "Virtual holds",
        "sv_agents_ready": "Agents signed in",
        "sv_agents_needed": "Agents signed in / needed (forecast)",
        "sv_agents": "Agents",
        "sv_no_agents": "No queue members known.",
        "sv_state_free": "free",
        "sv_state_ringing": "ringing",
        "sv_state_talking": "talking",
        "sv_state_wrapup": "wrap-up",
        "sv_state_paused": "paused",
        "sv_state_unavailable": "unavailable",
        "sv_charts": "Today (per half hour)",
        "sv_chart_sl": "Service level (of offered) per half hour, target {target} %",
        "sv_chart_arrivals": "Calls per half hour (bars) and forecast (line)",
        "sv_chart_arrivals_only": "Calls per half hour (no forecast available)",
        "sv_legend_ok": "target met",
        "sv_legend_warn": "up to {points} points below",
        "sv_legend_bad": "clearly missed",
        "sv_as_of": "As of {time}",
        "js_sv_live": "Live",
        "js_sv_reconnecting": "Connection lost – reconnecting …",
    },
}

_WEEKDAYS: Final = {
    "de": ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}


def language(value: str | None) -> str:
    """A supported language code.

    Args:
        value: Requested code (query or cookie).

    Returns:
        The code, or the default (German).
    """
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def label(lang: str, key: str, **values: object) -> str:
    """One label, with placeholders filled.

    Args:
        lang: Language code.
        key: Label key.
        **values: Placeholder values.

    Returns:
        The text.
    """
    text = LABELS[language(lang)][key]
    return text.format(**values) if values else text


def format_local(value: datetime, lang: str) -> str:
    """A local time as agents read it: ``Fr 15.05.2026 18:00``.

    Args:
        value: An aware datetime already in the rules' time zone.
        lang: Language code.

    Returns:
        Weekday, date and time.
    """
    day = _WEEKDAYS[language(lang)][value.weekday()]
    return f"{day} {value:%d.%m.%Y %H:%M}"


def script_labels(lang: str) -> dict[str, str]:
    """The labels the page script needs (``js_*`` keys, prefix removed).

    Args:
        lang: Language code.

    Returns:
        Key to text.
    """
    return {k[3:]: v for k, v in LABELS[language(lang)].items() if k.startswith("js_")}
