"""AURA-X control plane: the rules and the thin AWS adapters the Lambda handlers in `functions/` call.
Pure Python (pydantic, PyYAML, Powertools, boto3 from the runtime): no numpy, torch or matplotlib.

Rules, plain functions over values (unit-tested without AWS):
    monitor   divergence, spike, plateau, bad lines, the critical-window alert profile
    cost      attempt pricing, storage estimate, projection, budget thresholds
    idle      idle and stuck-runnable rules
    decision  the go/no-go rule
    report    the abort report (Markdown and HTML)

Adapters and services (AWS through `aws.client`):
    store       the run-state table layout (see its docstring)      objects   S3 by URI
    notify      SNS + EventBridge                                    jobs      the run's Batch jobs
    guard       the stop sequence (abort reason, StopRequest, terminate, alert)
    monitoring  one metrics chunk end to end                         ledger    one run's cost ledger
    watch       one run's idle watch                                 tasks     the state machine's tasks
    dashboard   the EMF metrics the dashboard plots
    runtime, settings, inputs, idempotency: wiring shared by the handlers
"""
