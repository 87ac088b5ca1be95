DROP TABLE editors;
