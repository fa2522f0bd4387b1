"""Cut a multipart upload off while it streams, as soon as it passes ``MAX_UPLOAD_BYTES``."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler


class SizeLimitUploadHandler(FileUploadHandler):
    """First of the upload handlers: no later handler (memory or temp file) sees a byte past the
    limit, and the rest of the body is never read. The API answers 413 ``too_large``."""

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.MAX_UPLOAD_BYTES:
            raise RequestDataTooBig(
                f"The upload is over the limit of {settings.MAX_UPLOAD_BYTES} bytes."
            )
        return raw_data

    def file_complete(self, file_size):
        return None
