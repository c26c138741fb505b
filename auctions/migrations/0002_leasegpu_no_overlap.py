"""One GPU can never be in two leases whose [start, end) overlap: a PostgreSQL exclusion constraint.

PostgreSQL only (btree_gist); the SQLite demo serialises its single clearing writer instead.
"""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    """ALTER TABLE auctions_leasegpu ADD CONSTRAINT leasegpu_no_overlap
       EXCLUDE USING gist (gpu_id WITH =, tstzrange(start, "end", '[)') WITH &&)""",
]
BACKWARD = ["ALTER TABLE auctions_leasegpu DROP CONSTRAINT IF EXISTS leasegpu_no_overlap"]


def _run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return apply


class Migration(migrations.Migration):
    dependencies = [("auctions", "0001_initial")]
    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
