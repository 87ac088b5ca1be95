DROP TRIGGER IF EXISTS subscribers_keep_ledger ON subscribers;
DROP FUNCTION IF EXISTS subscribers_keep_ledger();
ALTER TABLE deliveries ADD CONSTRAINT deliveries_subscriber_id_fkey
    FOREIGN KEY (subscriber_id) REFERENCES subscribers (id) ON DELETE CASCADE;
