"""A flow run ends when its work ends, not at its heartbeat thread's next whole second.

Prefect 3.8 and 3.9 send a flow run's heartbeats (what detects crashed runs) from a thread that
sleeps in one-second steps, and a sync flow run joins that thread when its function returns
(`_send_heartbeats` in `prefect/flow_engine.py`): every dispatch, collect shard and MRV subflow
lasted its work rounded up to a whole second, 0.5 s on average (an empty flow: 1.06 s, 0.12 s
without the join). Prefect's async flow runs already skip the join (`join_on_exit=False`); this
gives sync ones the same. Heartbeats are unchanged: the thread sees the stop at its next second
and sends nothing after it.

Every module that defines a flow imports this one, once per process, for that effect; the
`flows` package itself does not, so that `meterflow`'s commands can set Prefect's logging before
Prefect loads. A Prefect whose heartbeats take no `join_on_exit` is left as it is.
"""

from __future__ import annotations

import functools
import inspect

from prefect import flow_engine

if "join_on_exit" in inspect.signature(flow_engine._send_heartbeats).parameters:
    flow_engine._send_heartbeats = functools.partial(
        flow_engine._send_heartbeats, join_on_exit=False
    )
