"""Model fields: Stripe secrets encrypted at rest.

django-fernet-encrypted-fields derives Fernet keys from ``SECRET_KEY`` (+ ``SECRET_KEY_FALLBACKS``)
and ``SALT_KEY``. Its ``to_python`` swallows ``InvalidToken`` and hands back the *ciphertext*, so a
rotated or mistyped ``SECRET_KEY`` would silently turn a Stripe key into garbage that we would then
send to Stripe. :class:`EncryptedSecretField` fails loudly instead, never serializes the plaintext
(``dumpdata`` writes the ciphertext), and stores "no secret" as an empty string, not NULL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.db import models
from encrypted_fields.fields import EncryptedCharField

if TYPE_CHECKING:
    # The library is untyped: describe what we use of it so the model attribute is a ``str``.
    class _EncryptedCharField(models.CharField[str, str]):
        f: Fernet | MultiFernet
else:
    _EncryptedCharField = EncryptedCharField

# Every Fernet token starts with the version byte 0x80, base64-encoded as "gAAAAA".
_FERNET_TOKEN_PREFIX = "gAAAAA"  # noqa: S105 (a format marker, not a secret)


class SecretDecryptionError(RuntimeError):
    """A stored secret cannot be decrypted with the configured keys."""


class EncryptedSecretField(_EncryptedCharField):
    """An encrypted ``CharField`` that never passes ciphertext off as the secret."""

    def _decrypt(self, token: str) -> str:
        try:
            plaintext: str = self.f.decrypt(token.encode("utf-8")).decode("utf-8")
        except InvalidToken:
            owner = f"{self.model.__name__}.{self.name}" if hasattr(self, "model") else self.name
            raise SecretDecryptionError(
                f"Cannot decrypt {owner}: it was encrypted with another key. Restore the old "
                "DJANGO_SECRET_KEY in DJANGO_SECRET_KEY_FALLBACKS (or the old "
                "FIELD_ENCRYPTION_SALT), or enter the secret again."
            ) from None
        return plaintext

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str:
        if value is None or value == "":
            return ""
        return self._decrypt(str(value))

    def to_python(self, value: Any) -> str:
        # Forms and deserialization hand us plaintext; a serialized dump holds a Fernet token.
        if value is None:
            return ""
        text = str(value)
        if text.startswith(_FERNET_TOKEN_PREFIX):
            return self._decrypt(text)
        return text

    def get_prep_value(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        token: str = super().get_prep_value(value)
        return token

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata / serializers: never write the plaintext secret.
        return self.get_prep_value(self.value_from_object(obj))
