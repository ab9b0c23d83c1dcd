"""(being written)"""

from flask import Blueprint

bp = Blueprint("exams", __name__)
