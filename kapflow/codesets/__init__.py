"""Clinical code sets a superbill needs (ICD-10-CM diagnoses), each behind one module that owns its package.

Callers get plain answers (a sentence or None, a description); no code set library's types or exceptions
leave these modules, so a package can be replaced or its pin moved without touching them.
"""
