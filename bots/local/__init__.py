"""The local host: ``chatbot serve`` runs ingress, queue, worker and core in one process."""
