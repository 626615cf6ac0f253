"""How data and people reach Trouw: the HTTP API, file imports and webshops."""
