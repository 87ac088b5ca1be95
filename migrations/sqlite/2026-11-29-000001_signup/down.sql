DROP TABLE deliveries;
DROP TABLE confirmation_tokens;
DROP TABLE consents;
DROP TABLE subscribers;
