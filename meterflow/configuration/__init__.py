"""Configuration: the participant XML, validated against the XSD, as models."""
