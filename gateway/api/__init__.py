"""The JSON API (`/v1`): its routes, each declared once with its body and answer models,
from which both the Starlette routes and the OpenAPI document are made."""
