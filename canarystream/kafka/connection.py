"""How clients reach the cluster: bootstrap, security, and the names of the topics.

One place turns :class:`~canarystream.settings.Settings` into arguments for aiokafka clients
and for the Faust app, so the worker, the actuators, the CLI and the tests connect alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from canarystream.contracts.topics import TOPICS
from canarystream.settings import Settings

__all__ = ["LOCAL_BOOTSTRAP", "Connection"]

LOCAL_BOOTSTRAP = "127.0.0.1:19092"  # the broker of ``canarystream kafka up``


@dataclass(frozen=True)
class Connection:
    """The cluster address, its security settings, and the topic prefix in force."""

    settings: Settings

    @classmethod
    def of(cls, settings: Settings) -> Connection:
        return cls(settings)

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap or LOCAL_BOOTSTRAP

    @property
    def is_local(self) -> bool:
        """True when no cluster was named and the embedded broker is meant."""
        return self.settings.kafka_bootstrap is None

    def topic(self, name: str) -> str:
        """The topic's name in this cluster (the contract name behind the prefix)."""
        return f"{self.settings.topic_prefix}{name}"

    def topics(self) -> dict[str, str]:
        """Contract name → name in this cluster, for every topic of the contract."""
        return {spec.name: self.topic(spec.name) for spec in TOPICS}

    def _ssl_context(self) -> Any:
        s = self.settings
        if not s.kafka_security_protocol.endswith("SSL"):
            return None
        from aiokafka.helpers import create_ssl_context  # noqa: PLC0415

        return create_ssl_context(
            cafile=str(s.kafka_ssl_cafile) if s.kafka_ssl_cafile else None,
            certfile=str(s.kafka_ssl_certfile) if s.kafka_ssl_certfile else None,
            keyfile=str(s.kafka_ssl_keyfile) if s.kafka_ssl_keyfile else None,
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers, consumers and admin clients."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": s.kafka_security_protocol,
        }
        if (context := self._ssl_context()) is not None:
            kwargs["ssl_context"] = context
        if s.kafka_security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = s.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = s.kafka_sasl_username
            kwargs["sasl_plain_password"] = (
                s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else None
            )
        return kwargs

    def faust_kwargs(self) -> dict[str, Any]:
        """``broker`` and ``broker_credentials`` for :class:`faust.App`."""
        import faust  # noqa: PLC0415  (heavy import, only for the worker)

        s = self.settings
        brokers = ";".join(f"kafka://{host}" for host in self.bootstrap.split(","))
        kwargs: dict[str, Any] = {"broker": brokers}
        context = self._ssl_context()
        if s.kafka_security_protocol.startswith("SASL"):
            password = s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else ""
            if s.kafka_sasl_mechanism == "PLAIN":
                kwargs["broker_credentials"] = faust.SASLCredentials(
                    username=s.kafka_sasl_username, password=password, ssl_context=context
                )
            else:
                kwargs["broker_credentials"] = faust.SASLCredentials(
                    username=s.kafka_sasl_username,
                    password=password,
                    ssl_context=context,
                    mechanism=s.kafka_sasl_mechanism,
                )
        elif context is not None:
            kwargs["broker_credentials"] = faust.SSLCredentials(context)
        return kwargs
