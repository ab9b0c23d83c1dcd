"""Encryption of ID numbers at rest (PIPL): Fernet ciphertext plus a keyed blind index.

The blind index (HMAC-SHA256 under a key derived from the encryption key) lets the
database enforce "one ID number, one employee" and find duplicates without ever
storing or comparing plaintext.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken


class IdNumberVault:
    def __init__(self, key: str | bytes) -> None:
        raw = key.encode("ascii") if isinstance(key, str) else key
        try:
            self._fernet = Fernet(raw)
        except ValueError as exc:
            raise ValueError("ID_NUMBER_KEY must be a Fernet key (32 url-safe base64 bytes)") from exc
        self._index_key = hashlib.sha256(b"lms.id-number.blind-index\0" + raw).digest()

    def encrypt(self, id_number: str) -> bytes:
        return self._fernet.encrypt(id_number.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(token)).decode("utf-8")
        except InvalidToken as exc:
            raise ValueError("ID number cannot be decrypted with the configured key") from exc

    def blind_index(self, id_number: str) -> str:
        return hmac.new(self._index_key, id_number.encode("utf-8"), hashlib.sha256).hexdigest()
