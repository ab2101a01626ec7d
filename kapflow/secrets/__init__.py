"""The console's credentials' cryptography, one module per library: passwords (argon2-cffi), TOTP (pyotp).

Each library is imported in its module alone, and its errors are translated there into kapflow's own.
"""
