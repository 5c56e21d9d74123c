from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from assets.models import Asset
from assets.services import delete_unused_blobs


@receiver(post_delete, sender=Asset)
def delete_blobs_of_asset(sender, instance: Asset, **kwargs) -> None:
    digests = {instance.blob_id, instance.thumbnail_id} - {None}
    transaction.on_commit(lambda: delete_unused_blobs(digests))
