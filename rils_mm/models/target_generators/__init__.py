from .clip_teacher import CLIPTeacher

__all__ = ['CLIPTeacher']
