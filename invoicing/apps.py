from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    """Purchase orders, their Stripe invoices and the payment ledger."""

    name = "invoicing"
    verbose_name = "Invoicing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the approval receiver (post_save of PurchaseOrder).
        from invoicing import signals  # noqa: F401
