"""Reflex configuration: app module ``app.app`` (Reflex imports ``<app_name>.<app_name>``)."""

import reflex as rx

config = rx.Config(
    app_name="app",
    telemetry_enabled=False,
    # Set explicitly: hides the prod "Built with Reflex" badge without a tier check.
    show_built_with_reflex=False,
    default_color_mode="light",
    plugins=[
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(accent_color="indigo", gray_color="slate", radius="medium", scaling="100%"),
        ),
    ],
    # No public pages to index; the default sitemap plugin would only warn.
    disable_plugins=[rx.plugins.SitemapPlugin],
)
