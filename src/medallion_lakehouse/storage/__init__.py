"""Delta Lake storage: every table read and write of the project goes through here."""
