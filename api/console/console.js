// Tessera console
