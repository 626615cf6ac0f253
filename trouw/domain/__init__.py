"""The shop's records in the database and what Trouw does with them (sends, consent, loyalty...)."""
