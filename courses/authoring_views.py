from flask import Blueprint

bp = Blueprint("authoring", __name__)
