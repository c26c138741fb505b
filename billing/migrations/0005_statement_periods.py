"""Statement periods of configurable length (BILLING_STATEMENT_SECONDS, one UTC day by default).

A statement names its period by `period_start` (existing rows: their day's midnight, UTC); invoices
bound their periods by instants, so the demo can invoice a few minutes' statements. The statement
trigger of 0004 keeps `period_start` final too.
"""

import datetime as dt

from django.db import migrations, models

STATEMENT_FINAL = r"""
CREATE OR REPLACE FUNCTION billing_statement_final() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'statement % is final: DELETE refused', OLD.id USING ERRCODE = '42501';
    END IF;
    IF (NEW.lease_id, NEW.team_id, NEW.day, NEW.period_start, NEW.seq, NEW.kind, NEW.currency,
        NEW.window_start, NEW.window_end, NEW.leased_gpu_seconds, NEW.delivered_gpu_seconds,
        NEW.lease_payment_cents, NEW.lease_gpu_seconds, NEW.charge_cents, NEW.credit_cents,
        NEW.fee_cents)
       IS DISTINCT FROM
       (OLD.lease_id, OLD.team_id, OLD.day, OLD.period_start, OLD.seq, OLD.kind, OLD.currency,
        OLD.window_start, OLD.window_end, OLD.leased_gpu_seconds, OLD.delivered_gpu_seconds,
        OLD.lease_payment_cents, OLD.lease_gpu_seconds, OLD.charge_cents, OLD.credit_cents,
        OLD.fee_cents)
       OR (OLD.transaction_id IS NOT NULL AND NEW.transaction_id IS DISTINCT FROM OLD.transaction_id)
    THEN
        RAISE EXCEPTION 'statement % is final: late evidence makes an adjustment statement', OLD.id
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
"""

STATEMENT_FINAL_0004 = r"""
CREATE OR REPLACE FUNCTION billing_statement_final() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'statement % is final: DELETE refused', OLD.id USING ERRCODE = '42501';
    END IF;
    IF (NEW.lease_id, NEW.team_id, NEW.day, NEW.seq, NEW.kind, NEW.currency, NEW.window_start,
        NEW.window_end, NEW.leased_gpu_seconds, NEW.delivered_gpu_seconds, NEW.lease_payment_cents,
        NEW.lease_gpu_seconds, NEW.charge_cents, NEW.credit_cents, NEW.fee_cents)
       IS DISTINCT FROM
       (OLD.lease_id, OLD.team_id, OLD.day, OLD.seq, OLD.kind, OLD.currency, OLD.window_start,
        OLD.window_end, OLD.leased_gpu_seconds, OLD.delivered_gpu_seconds, OLD.lease_payment_cents,
        OLD.lease_gpu_seconds, OLD.charge_cents, OLD.credit_cents, OLD.fee_cents)
       OR (OLD.transaction_id IS NOT NULL AND NEW.transaction_id IS DISTINCT FROM OLD.transaction_id)
    THEN
        RAISE EXCEPTION 'statement % is final: late evidence makes an adjustment statement', OLD.id
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
"""


def statement_periods_fill(apps, schema_editor):
    # Before this migration every statement covered its whole UTC day.
    Statement = apps.get_model("billing", "Statement")
    for day in Statement.objects.values_list("day", flat=True).distinct():
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        Statement.objects.filter(day=day).update(period_start=midnight)


def invoice_dates_as_instants(apps, schema_editor):
    # PostgreSQL casts the dates to midnights itself; SQLite keeps 'YYYY-MM-DD' text, which Django
    # would read back as no datetime at all.
    if schema_editor.connection.vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            for column in ("period_start", "period_end"):
                cursor.execute(
                    f"UPDATE billing_invoice SET {column} = {column} || ' 00:00:00' "  # noqa: S608
                    f"WHERE length({column}) = 10"
                )


def trigger_forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(STATEMENT_FINAL)


def trigger_backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(STATEMENT_FINAL_0004)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_statement_final")]

    operations = [
        migrations.AddField(
            model_name="statement", name="period_start", field=models.DateTimeField(null=True)
        ),
        migrations.RunPython(statement_periods_fill, migrations.RunPython.noop),
        migrations.AlterField(model_name="statement", name="period_start", field=models.DateTimeField()),
        migrations.RemoveConstraint(model_name="statement", name="statement_once_per_lease_day_seq"),
        migrations.AddConstraint(
            model_name="statement",
            constraint=models.UniqueConstraint(
                fields=("lease", "period_start", "seq"), name="statement_once_per_lease_period_seq"
            ),
        ),
        migrations.AlterField(model_name="invoice", name="period_start", field=models.DateTimeField()),
        migrations.AlterField(model_name="invoice", name="period_end", field=models.DateTimeField()),
        migrations.RunPython(invoice_dates_as_instants, migrations.RunPython.noop),
        migrations.RunPython(trigger_forward, trigger_backward),
    ]
