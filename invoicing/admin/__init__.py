"""The organizer's admin: purchase orders and their ledger, conferences, the webhook inbox.

Rules the admin keeps, whatever a staff member clicks:

- State moves only through the services (approve, record a payment, cancel...) or the tasks that
  call them; the admin never sets a status, a Stripe field or a ledger row itself.
- A saved form writes only the fields the form changed (``update_fields``), under the PO's row
  lock, so a webhook that landed while the page was open is never overwritten by stale values.
- Lines and terms are editable only while the PO is a draft; recorded payments are never editable.
- Stripe secrets are write-only: never sent to the browser, a blank input keeps the stored one.
- Each conference's team sees and acts on that conference only (:mod:`invoicing.admin.scoping`);
  changing where its money goes takes a finance admin and their password.
"""

from django.contrib import admin

from invoicing.admin.conferences import ConferenceAdmin
from invoicing.admin.notifications import NotificationAdmin, NotificationSubscriptionAdmin
from invoicing.admin.purchase_orders import PurchaseOrderAdmin
from invoicing.admin.stripe_records import StripeCustomerAdmin, StripeEventAdmin
from invoicing.admin.teams import ConferenceRoleAdmin
from invoicing.models import (
    Conference,
    ConferenceRole,
    Notification,
    NotificationSubscription,
    PurchaseOrder,
    StripeCustomer,
    StripeEvent,
)

admin.site.site_header = "PO invoicing"
admin.site.site_title = "PO invoicing"
admin.site.index_title = "Purchase orders, Stripe invoices and payments"

admin.site.register(Conference, ConferenceAdmin)
admin.site.register(ConferenceRole, ConferenceRoleAdmin)
admin.site.register(PurchaseOrder, PurchaseOrderAdmin)
admin.site.register(StripeCustomer, StripeCustomerAdmin)
admin.site.register(StripeEvent, StripeEventAdmin)
admin.site.register(NotificationSubscription, NotificationSubscriptionAdmin)
admin.site.register(Notification, NotificationAdmin)
