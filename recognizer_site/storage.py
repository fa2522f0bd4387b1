"""File storage that never leaves a half-written file under its final name."""

import os
import tempfile

from django.core.files.storage import FileSystemStorage


class AtomicFileSystemStorage(FileSystemStorage):
    """Write to a temporary file in the same folder, fsync, then rename into place.

    With ``durable=False`` the fsync is skipped: a crash still never leaves a
    half-written file, but a power cut may lose the newest files, as it may lose
    SQLite's newest commits under ``synchronous=NORMAL``.
    """

    def __init__(self, *args, durable: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.durable = durable

    def _save(self, name, content):
        full_path = self.path(name)
        directory = os.path.dirname(full_path)
        os.makedirs(directory, exist_ok=True)
        descriptor, temporary_path = tempfile.mkstemp(dir=directory, prefix=".partial-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                if hasattr(content, "seek"):
                    content.seek(0)
                for chunk in content.chunks():
                    handle.write(chunk)
                handle.flush()
                if self.durable:
                    os.fsync(handle.fileno())
            if self.file_permissions_mode is not None:
                os.chmod(temporary_path, self.file_permissions_mode)
            os.replace(temporary_path, full_path)
        except BaseException:
            os.unlink(temporary_path)
            raise
        return str(name).replace("\\", "/")
