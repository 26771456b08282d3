"""HTTP adapters: one router per resource, thin routes over ``service.studies``."""
