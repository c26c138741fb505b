from django.apps import AppConfig


class BillingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "billing"

    def ready(self) -> None:
        # The market must not import billing (billing depends on it), so billing registers its
        # check on new bids: a team suspended for not paying cannot bid until it pays.
        from marketplace.services import BID_GUARDS

        from .selectors import BILLING_BID_GUARD

        if BILLING_BID_GUARD not in BID_GUARDS:
            BID_GUARDS.append(BILLING_BID_GUARD)
