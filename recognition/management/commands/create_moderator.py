"""``manage.py create_moderator``: a staff account in the Moderators group."""

import getpass
import os

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from recognition.services import moderator_create

PASSWORD_VARIABLE = "DJANGO_MODERATOR_PASSWORD"


class Command(BaseCommand):
    help = (
        "Create a moderator (staff, in the Moderators group) or promote an existing user. "
        f"The password comes from ${PASSWORD_VARIABLE} or a prompt."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help=f"Never prompt; without ${PASSWORD_VARIABLE} a new account has no password.",
        )

    def handle(self, *args, username, email, interactive, **options):
        password = os.environ.get(PASSWORD_VARIABLE)
        if password is None and interactive:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        if password:
            try:
                validate_password(password)
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from None
        user = moderator_create(username=username, email=email, password=password or None)
        self.stdout.write(self.style.SUCCESS(f"{user.username} is a moderator."))
