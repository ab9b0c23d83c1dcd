"""(being written)"""

from flask import Blueprint

bp = Blueprint("exam_authoring", __name__)
