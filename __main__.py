"""Pulumi program: stack config in, the FetchML component out."""

from fetchml_infra import config
from fetchml_infra.stack import FetchML

FetchML("fetchml", config.load()).export_outputs()
