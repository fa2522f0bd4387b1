"""The error answers every app's API gives, as the OpenAPI schema documents them."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    class ErrorBody(serializers.Serializer):
        code = serializers.CharField()
        message = serializers.CharField()

    error = ErrorBody()


# Error answers, as the schema documents them.
ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Bad input, with a code and a reason"),
    404: OpenApiResponse(ErrorSerializer, description="No such object"),
    429: OpenApiResponse(ErrorSerializer, description="Throttled"),
}
UNAVAILABLE = OpenApiResponse(ErrorSerializer, description="The request counter is unreachable")
