DROP TABLE clicks;
DROP TABLE issue_links;
