"""The desired state: what the state repo's files say, read safely and validated.

One schema module per file of the state repo: lanai_yaml, models_yaml, webui_yaml,
modelfile; compose_shape and host_access for the compose file. load turns a checkout
into a DesiredState; source is the git mirror it comes from; bounded, safe_tree,
yamlpos and documents read a commit without trusting it.
"""
