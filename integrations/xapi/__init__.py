"""xAPI 1.0.3 statements about training events, sent to a Learning Record Store when
``XAPI_LRS_URL`` is configured."""
