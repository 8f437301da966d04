"""Following calls after routing: the call tracker and the live metrics.

:mod:`~pbxbridge.tracking.call_tracker` keeps one lifecycle record per routed
call (fed by the routers' decisions and the AMI client's app_queue events) and
tells the MQTT publisher, the agent page and its ``on_record`` observer (the
journal, :mod:`~pbxbridge.tracking.metrics`) about every change. Both depend on
the core only; the adapters feed them through callbacks wired in
:mod:`pbxbridge.app` and are never imported here.
"""
