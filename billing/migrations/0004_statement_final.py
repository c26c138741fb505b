"""PostgreSQL keeps statements final: their evidence and money never change, and none is deleted.

Only the links filled in later (the invoice, its Stripe item, the ledger transaction once) may be set.
"""

from django.db import migrations

FORWARD = r"""
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

CREATE TRIGGER billing_statement_final
    BEFORE UPDATE OR DELETE ON billing_statement
    FOR EACH ROW EXECUTE FUNCTION billing_statement_final();
CREATE TRIGGER billing_statementpayable_append_only
    BEFORE UPDATE OR DELETE ON billing_statementpayable
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS billing_statementpayable_append_only ON billing_statementpayable;
DROP TRIGGER IF EXISTS billing_statement_final ON billing_statement;
DROP FUNCTION IF EXISTS billing_statement_final();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_statements_stripe_console")]
    operations = [migrations.RunPython(forward, backward)]
