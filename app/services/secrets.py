"""Endpoint credentials encrypted at rest with Fernet (AES-128-CBC + HMAC), key rotation by list."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.config import Settings


class SecretBox:
    """MODELCERT_SECRET_KEY holds one or more comma-separated Fernet keys, newest first."""

    def __init__(self, keys: list[str]) -> None:
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.modelcert_secret_key is None:
            raise RuntimeError("MODELCERT_SECRET_KEY is not set")
        keys = [k.strip() for k in settings.modelcert_secret_key.get_secret_value().split(",")]
        return cls([k for k in keys if k])

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken:
            raise RuntimeError("the secret cannot be decrypted with MODELCERT_SECRET_KEY") from None

    def rotate(self, ciphertext: bytes) -> bytes:
        return self._fernet.rotate(ciphertext)
