"""The writer's own endpoint: forget their handwriting."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from recognizer_site.api_errors import ErrorSerializer
from recognizer_site.throttles import AnonThrottle, UserThrottle

from . import selectors, services
from .identity import WRITER_NAME_MAX_LENGTH, writer_of


class WriterMeApi(APIView):
    """The personal model of the writer making the request."""

    permission_classes = [AllowAny]
    throttle_classes = [AnonThrottle, UserThrottle]

    class WriterQuerySerializer(serializers.Serializer):
        writer = serializers.CharField(
            required=False, allow_blank=True, max_length=WRITER_NAME_MAX_LENGTH
        )

    class ForgetOutputSerializer(serializers.Serializer):
        forgotten = serializers.BooleanField(help_text="Whether there was a personal model.")

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "writer",
                str,
                description="A token client's end user, as sent with their predictions.",
            )
        ],
        responses={
            200: ForgetOutputSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Bad input"),
        },
    )
    def delete(self, request):
        """Forget the writer's handwriting: their next drawings get the shared model's answer."""
        query = self.WriterQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        writer = writer_of(
            user=request.user,
            by_token=request.auth is not None,
            name=query.validated_data.get("writer", ""),
            session_key=request.session.session_key or "",
        )
        forgotten = bool(writer) and services.personal_models_reset(
            personal_models=selectors.personal_models_of(writer_key=writer.key)
        )
        return Response({"forgotten": bool(forgotten)}, status=status.HTTP_200_OK)
