"""The commands as thin shells: load -> observe -> decide -> act -> record -> render."""
