"""Adapters by provider kind."""

from django.conf import settings
from django.utils.module_loading import import_string

from providers.adapters.base import Adapter

ADAPTERS = {
    "local": "providers.adapters.local.LocalAdapter",
    "modelscope": "providers.adapters.modelscope.ModelScopeAdapter",
    "sora2_chat": "providers.adapters.sora2_chat.Sora2ChatAdapter",
    "openai_images": "providers.adapters.openai_images.OpenAIImagesAdapter",
    "openai_videos": "providers.adapters.openai_videos.OpenAIVideosAdapter",
}


class UnknownProviderKind(LookupError):
    pass


def get_adapter(kind: str) -> Adapter:
    try:
        path = ADAPTERS.get(kind) or settings.EXTRA_ADAPTERS[kind]
    except KeyError:
        raise UnknownProviderKind(f"No adapter for provider kind {kind!r}.") from None
    return import_string(path)()
