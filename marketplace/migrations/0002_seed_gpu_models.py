"""Seed the GPU catalogue with current datacentre GPUs; names match gridx.round/v1 files."""

from django.db import migrations

CATALOGUE = [
    # name, vendor, memory in GB, display name
    ("H100-SXM-80GB", "NVIDIA", 80, "NVIDIA H100 SXM 80GB"),
    ("H100-PCIE-80GB", "NVIDIA", 80, "NVIDIA H100 PCIe 80GB"),
    ("H200-SXM-141GB", "NVIDIA", 141, "NVIDIA H200 SXM 141GB"),
    ("B200-SXM-192GB", "NVIDIA", 192, "NVIDIA B200 SXM 192GB"),
    ("GB200-NVL-192GB", "NVIDIA", 192, "NVIDIA GB200 NVL72 (per GPU) 192GB"),
    ("A100-SXM-80GB", "NVIDIA", 80, "NVIDIA A100 SXM 80GB"),
    ("A100-SXM-40GB", "NVIDIA", 40, "NVIDIA A100 SXM 40GB"),
    ("L40S-48GB", "NVIDIA", 48, "NVIDIA L40S 48GB"),
    ("L4-24GB", "NVIDIA", 24, "NVIDIA L4 24GB"),
    ("MI300X-192GB", "AMD", 192, "AMD Instinct MI300X 192GB"),
    ("MI325X-256GB", "AMD", 256, "AMD Instinct MI325X 256GB"),
]


def seed(apps, schema_editor):
    GpuModel = apps.get_model("marketplace", "GpuModel")
    for name, vendor, memory_gb, display_name in CATALOGUE:
        GpuModel.objects.update_or_create(
            name=name, defaults={"vendor": vendor, "memory_gb": memory_gb, "display_name": display_name}
        )


def unseed(apps, schema_editor):
    GpuModel = apps.get_model("marketplace", "GpuModel")
    GpuModel.objects.filter(name__in=[row[0] for row in CATALOGUE], gpus__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
