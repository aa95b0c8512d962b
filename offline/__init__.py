"""The offline stack: the product on an embedded AWS emulator (moto), driven by template.yaml.

For trying and testing the product only; it is never a server to run in production. It shares the domain's
period rules (core.periods) with the functions, and finds them as every other entry point does: the project
is installed (`make install`, pip install -e .).
"""
