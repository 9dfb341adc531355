"""The fault suite's parts: the private stack, the payment-provider proxy, the actors, the figures."""
