"""Publishing to people (SNS) and to machines (the project's EventBridge bus)."""

from __future__ import annotations

from pydantic import BaseModel

from aurax_contracts import EVENT_SOURCE, AlertDetail, DetailType

from .aws import client

SNS_SUBJECT_MAX = 100


class Notifier:
    def __init__(self, topic_arn: str, bus_name: str) -> None:
        self.topic_arn = topic_arn
        self.bus_name = bus_name

    def message(self, subject: str, text: str) -> None:
        # SNS rejects subjects over 100 characters or with line breaks.
        clean = " ".join(subject.split())[:SNS_SUBJECT_MAX]
        client("sns").publish(TopicArn=self.topic_arn, Subject=clean, Message=text)

    def event(self, detail_type: DetailType, detail: BaseModel) -> None:
        response = client("events").put_events(Entries=[{
            "Source": EVENT_SOURCE, "DetailType": detail_type.value, "Detail": detail.model_dump_json(),
            "EventBusName": self.bus_name}])
        if response.get("FailedEntryCount"):
            failed = response["Entries"][0]
            raise RuntimeError(f"EventBridge refused the {detail_type.value} event: "
                               f"{failed.get('ErrorCode')} {failed.get('ErrorMessage')}")

    def alert(self, alert: AlertDetail) -> None:
        """Every alert goes to both: people read SNS, the dashboard and automations read the bus."""
        self.message(alert.subject(), alert.message())
        self.event(DetailType.ALERT, alert)
