"""The edges: the gateway client, the state, audit log, history and silence files, the device identity, file
helpers and locks. They store and fetch the core's records; they never decide.
"""
