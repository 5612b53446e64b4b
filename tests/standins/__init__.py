"""Local stand-ins for outside services (Bedrock, Slack, the Bot Framework connector).

Each one is a real HTTP server on 127.0.0.1 speaking the service's wire format, so the code
under test runs its real client path: only the address differs.
"""
