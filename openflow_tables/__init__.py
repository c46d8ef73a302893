"""The ryu-si pipeline as data: tables, field layouts, and the model -> flows compiler."""
