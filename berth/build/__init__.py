"""The builder: Dockerfile front end (dockerfile, shellwords, dockerignore, context, copysrc),
executor and cache."""
