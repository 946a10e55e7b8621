"""HTTPS on the LAN: the proxy's Caddyfile, the local CA (`lanai trust`) and its QR code.
"""
