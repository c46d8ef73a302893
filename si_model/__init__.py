"""The model: objects, their schema and checks, numbering, service paths and documents.

The bottom layer: it imports neither the compiler (``openflow_tables``) nor the
controller (``ryu_si``), and knows nothing of OpenFlow, Ryu or the store.
"""
