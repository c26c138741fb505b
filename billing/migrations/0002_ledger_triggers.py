"""PostgreSQL guards for the ledger: balanced transactions and append-only journal.

On SQLite (the embedded demo only) these are skipped; the services check the same rules, and
`manage.py ledger_check` verifies them on any database.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION billing_posting_balanced() RETURNS trigger AS $$
DECLARE bad record;
BEGIN
    SELECT currency, SUM(amount_cents) AS total INTO bad
      FROM billing_posting WHERE transaction_id = NEW.transaction_id
     GROUP BY currency HAVING SUM(amount_cents) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance in %: postings sum to %',
            NEW.transaction_id, bad.currency, bad.total USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER billing_posting_balanced
    AFTER INSERT ON billing_posting DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_posting_balanced();

CREATE OR REPLACE FUNCTION billing_transaction_has_postings() RETURNS trigger AS $$
BEGIN
    IF (SELECT COUNT(*) FROM billing_posting WHERE transaction_id = NEW.id) < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has fewer than two postings', NEW.id
            USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER billing_transaction_has_postings
    AFTER INSERT ON billing_ledgertransaction DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_transaction_has_postings();

CREATE OR REPLACE FUNCTION billing_posting_currency() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM billing_account WHERE id = NEW.account_id AND currency = NEW.currency) THEN
        RAISE EXCEPTION 'posting currency % differs from its account''s', NEW.currency
            USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_posting_currency
    BEFORE INSERT ON billing_posting FOR EACH ROW EXECUTE FUNCTION billing_posting_currency();

CREATE OR REPLACE FUNCTION billing_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused; post a reversing transaction instead',
        TG_TABLE_NAME, TG_OP USING ERRCODE = '42501';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_posting_append_only
    BEFORE UPDATE OR DELETE ON billing_posting FOR EACH ROW EXECUTE FUNCTION billing_append_only();
CREATE TRIGGER billing_ledgertransaction_append_only
    BEFORE UPDATE OR DELETE ON billing_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS billing_ledgertransaction_append_only ON billing_ledgertransaction;
DROP TRIGGER IF EXISTS billing_posting_append_only ON billing_posting;
DROP FUNCTION IF EXISTS billing_append_only();
DROP TRIGGER IF EXISTS billing_posting_currency ON billing_posting;
DROP FUNCTION IF EXISTS billing_posting_currency();
DROP TRIGGER IF EXISTS billing_transaction_has_postings ON billing_ledgertransaction;
DROP FUNCTION IF EXISTS billing_transaction_has_postings();
DROP TRIGGER IF EXISTS billing_posting_balanced ON billing_posting;
DROP FUNCTION IF EXISTS billing_posting_balanced();
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
    dependencies = [("billing", "0001_ledger")]
    operations = [migrations.RunPython(forward, backward)]
