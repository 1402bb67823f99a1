"""The application on top of DIMSE: durable storage, index, query/retrieve, policy, audit."""
